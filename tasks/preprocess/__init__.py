"""Pure preprocessing stages: type sniffing, PDF rendering, image normalisation, audio decoding and VAD."""
