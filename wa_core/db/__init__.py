"""Database access: schema, engines and the landing store."""
