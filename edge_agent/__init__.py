"""edge-agent: bench serial sensors -> Archetype AI lens -> Atlas issues and test-step outcomes."""

__version__ = "0.1.0"
