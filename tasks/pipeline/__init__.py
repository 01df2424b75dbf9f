"""The stage protocol every stage implements, the per-object context stages share, and running a stage over a batch
with per-item isolation. Imports no stage: the stages import it."""
