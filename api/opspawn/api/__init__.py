"""The contract between users, operator and runner: the AgentTask resource (`agenttask`, from
which `crd` generates the CRD), its status conditions (`conditions`) and the runner event
schema (`events`). It imports neither `opspawn.operator` nor `opspawn.runner`."""
