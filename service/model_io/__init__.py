"""What the runtime needs to talk to a trained model: its input/output contract (``config``),
the agent-centric feature building (``features``), the manifest checks (``manifest``) and the
constant-velocity fallback (``baselines``). Training code in ``models/`` imports these; the
runtime never imports ``models/``."""
