-- Prefect's own state lives beside docflow's, in a database of its own.
CREATE DATABASE prefect OWNER docflow;
