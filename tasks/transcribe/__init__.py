"""Calls: transcription of speech segments with Whisper, who spoke when (diarization), and the stage."""
