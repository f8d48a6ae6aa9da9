"""llmpipe's library: the six stages, their storage, configuration and tracking. No Prefect here."""
