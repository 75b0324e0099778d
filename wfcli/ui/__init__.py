"""Terminal views: rich tables and live displays built from client data."""
