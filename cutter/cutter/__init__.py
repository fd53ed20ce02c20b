"""streamvault cutter: cut and upload jobs claimed from PostgreSQL."""
