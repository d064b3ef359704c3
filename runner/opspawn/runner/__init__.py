"""The runner: the entrypoint of an AgentTask's Job. It reads its input from the environment,
carries out the agent loop (model calls, tools, MCP servers, budgets) and streams signed
events to NATS JetStream. It never talks to the Kubernetes API or Postgres."""
