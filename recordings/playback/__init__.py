"""What the Flex Insights Player asks for: url_provider's decision, the Flex token check, and
the short-lived links it issues (and the media fetches they allow)."""
