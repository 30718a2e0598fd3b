"""OphthAI Desktop: an ophthalmology clinical workstation."""

__version__ = "0.1.0"
