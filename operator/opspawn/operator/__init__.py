"""The operator: kopf handlers that turn AgentTasks into runner Jobs, mirror runner events into
status and keep the audit trail in Postgres. It never calls a model."""
