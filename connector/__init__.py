"""keap-bounce-connector: keeps Keap contact lists clean when email bounces."""

__version__ = "0.1.0"
