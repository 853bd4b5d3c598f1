"""The control plane: FastAPI app, auth and RBAC, inbound webhooks, operations API (ADR-0008)."""
