"""The REST API's common parts (errors, pagination, permissions, schema) and the core's
resources. Each app serves its own resources from its `api` package."""
