"""Everything that talks to Keap: the REST client, credentials, retries and pacing."""
