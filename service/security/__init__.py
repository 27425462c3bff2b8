"""Who may call: API-key and JWT verification, key material and credentials, per-caller quotas."""
