"""REST transport: declared endpoints, validated by pydantic, mapped to one error tree."""
