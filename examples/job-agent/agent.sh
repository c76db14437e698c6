#!/bin/sh
# An example Job agent (docs/agents.md#the-container-contract): reads the run from its
# environment and input file, does its work, and reports the result as a JSON object in its
# termination message. Exit 0 is success; anything else fails the attempt with that message.
set -eu

echo "run ${AGENTRUN_NAMESPACE}/${AGENTRUN_NAME} (id ${AGENTRUN_ID}), attempt ${AGENTRUN_ATTEMPT}, dry run ${AGENTRUN_DRY_RUN}"
echo "objective: ${AGENTRUN_OBJECTIVE}"
echo "input document:"
cat "${AGENTRUN_INPUT_FILE}"
echo

# params.fail: "reason" makes the attempt fail, to see retries and the error on the run.
case "${AGENTRUN_PARAMS}" in
  *'"fail"'*)
    echo "asked to fail" > /dev/termination-log
    exit 3
    ;;
esac

words=$(printf '%s' "${AGENTRUN_OBJECTIVE}" | wc -w | tr -d ' ')
sleep "${WORK_SECONDS:-2}"
# The result: a JSON object, at most 4 KiB (the kubelet's limit for termination messages).
printf '{"words": %s, "attempt": %s, "dryRun": %s}' "${words}" "${AGENTRUN_ATTEMPT}" "${AGENTRUN_DRY_RUN}" > /dev/termination-log
