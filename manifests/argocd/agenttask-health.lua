-- Argo CD health of an opspawn.io AgentTask: the argocd-cm key
-- resource.customizations.health.opspawn.io_AgentTask (docs/install.md, "Argo CD").
-- Succeeded: Healthy. Failed, TimedOut, Cancelled: Degraded. Suspended by spec.suspend:
-- Suspended. Pending, Queued, Running (or no status yet): Progressing. The message is the
-- Succeeded condition's, or the Stalled one's while a running task is stalled.
hs = {}
local status = obj.status or {}
local phase = status.phase or "Pending"
local conditions = {}
for _, condition in ipairs(status.conditions or {}) do
  conditions[condition.type] = condition
end
hs.message = phase
local succeeded = conditions["Succeeded"]
if succeeded ~= nil and succeeded.message ~= nil and succeeded.message ~= "" then
  hs.message = succeeded.message
end
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Failed" or phase == "TimedOut" or phase == "Cancelled" then
  hs.status = "Degraded"
elseif obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
else
  hs.status = "Progressing"
  local stalled = conditions["Stalled"]
  if stalled ~= nil and stalled.status == "True" then
    hs.message = "Stalled: " .. (stalled.message or "no runner events")
  end
end
return hs
