"""Security: caller tokens, the provider-key vault and which credential goes upstream."""
