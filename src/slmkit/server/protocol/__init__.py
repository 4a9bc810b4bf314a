"""Request and response models of the APIs we speak (pydantic only, no logic beyond conversion)."""
