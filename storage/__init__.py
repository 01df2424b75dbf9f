"""IO adapters: database engine and tables, repositories, blob stores, migrations. Imports schemas only."""
