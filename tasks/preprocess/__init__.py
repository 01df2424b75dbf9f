"""Preprocessing, the CPU stage: type sniffing, PDF rendering and text layers, image normalisation, audio decoding and
VAD, and the stage that runs them per object."""
