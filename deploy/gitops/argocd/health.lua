-- Argo CD health check for agents.applylens.io/AgentRun (docs/gitops.md).
-- Install it under resource.customizations.health.agents.applylens.io_AgentRun in argocd-cm:
-- argocd-cm.yaml here, or the kustomize component in this directory.
--
-- It reads the Succeeded condition, the run's primary condition, which only moves forward:
--   absent or Unknown -> Progressing (not picked up yet, queued for a handler slot,
--                        running, or waiting to retry)
--   True              -> Healthy
--   False             -> Degraded, for every way a run can fail, Canceled included: a canceled
--                        run is over and did not do its job. Suspended would mean "paused,
--                        may resume", and Argo CD treats a Suspended hook as still running,
--                        so a sync would wait for a canceled hook until it timed out.
-- The message is the condition's "Reason: message".
--
-- status.observedGeneration is not compared with metadata.generation: a finished run never
-- changes again (spec.cancel, the only mutable field, has no effect on it), and a run that has
-- not finished is Progressing whatever its generation.
--
-- Plain Lua 5.1 (Argo CD runs gopher-lua); run in Argo CD's VM (hack/tools/argocd-lua) by
-- test/unit/gitops/gitops-argocd-health.test.ts.
local hs = {
  status = "Progressing",
  message = "Waiting for the operator to start the run",
}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local succeeded = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Succeeded" then
    succeeded = condition
  end
end
if succeeded == nil then
  return hs
end
if succeeded.status == "True" then
  hs.status = "Healthy"
elseif succeeded.status == "False" then
  hs.status = "Degraded"
end
local reason = succeeded.reason or succeeded.status or ""
if succeeded.message ~= nil and succeeded.message ~= "" then
  hs.message = reason .. ": " .. succeeded.message
elseif reason ~= "" then
  hs.message = reason
end
return hs
