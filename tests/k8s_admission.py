"""Admission checks in Python: a ValidatingAdmissionPolicy's CEL evaluated the way the API
server does (with cel-python), and the Pod Security "restricted" profile.

Kubernetes' order (admissionregistration.k8s.io/v1): the request must match the policy's
resource rules and every ``matchCondition``; then ``variables`` are computed in order (each
may use the ones before it as ``variables.<name>``); then each validation must be true, else
the request is refused with its ``messageExpression`` (or ``message``). An expression that
fails to evaluate counts as a refusal under ``failurePolicy: Fail``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import celpy

_ENV = celpy.Environment()


def _cel(value: Any) -> Any:
    return None if value is None else celpy.json_to_cel(value)


def _run(expression: str, activation: dict[str, Any]) -> Any:
    return _ENV.program(_ENV.compile(expression)).evaluate(activation)


@dataclass(frozen=True)
class Refusal:
    rule: str
    message: str


def _matches_rules(policy: dict[str, Any], obj: dict[str, Any], operation: str) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    resource = obj["kind"].lower() + "s"
    for rule in policy["spec"]["matchConstraints"]["resourceRules"]:
        if (group in rule["apiGroups"] and version in rule["apiVersions"] and operation in rule["operations"]
                and resource in rule["resources"]):
            return True
    return False


def evaluate(policy: dict[str, Any], obj: dict[str, Any], *, params: dict[str, Any], username: str,
             operation: str = "CREATE", old: dict[str, Any] | None = None) -> list[Refusal] | None:
    """None when the policy does not apply; else the refusals (empty: admitted)."""
    if not _matches_rules(policy, obj, operation):
        return None
    spec = policy["spec"]
    activation: dict[str, Any] = {
        "object": _cel(obj), "oldObject": _cel(old), "params": _cel(params),
        "request": _cel({"operation": operation, "userInfo": {"username": username}}),
    }
    for condition in spec.get("matchConditions", []):
        if not _run(condition["expression"], activation):
            return None
    variables: dict[str, Any] = {}
    for var in spec.get("variables", []):
        activation["variables"] = celpy.celtypes.MapType({celpy.celtypes.StringType(k): v for k, v in variables.items()})
        variables[var["name"]] = _run(var["expression"], activation)
    activation["variables"] = celpy.celtypes.MapType({celpy.celtypes.StringType(k): v for k, v in variables.items()})
    refusals = []
    for i, rule in enumerate(spec["validations"]):
        try:
            ok = _run(rule["expression"], activation)
        except celpy.CELEvalError as err:  # failurePolicy Fail: an error refuses
            refusals.append(Refusal(f"validations[{i}]", f"evaluation error: {err}"))
            continue
        if isinstance(ok, celpy.CELEvalError) or not ok:
            message = str(_run(rule["messageExpression"], activation)) if "messageExpression" in rule else rule["message"]
            refusals.append(Refusal(f"validations[{i}]", message))
    return refusals


# -- Pod Security Standards, "restricted" profile (Kubernetes' policy as of 1.30, which includes baseline) --
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What Pod Security "restricted" would refuse in a pod spec (empty: admitted).

    The checks of https://kubernetes.io/docs/concepts/security/pod-security-standards/ that a
    pod spec alone decides: host namespaces, privileged, capabilities, hostPath and other volume
    types, host ports, /proc mount, seccomp, sysctls, privilege escalation, non-root.
    """
    out = []
    psc = pod.get("securityContext") or {}
    containers = [*pod.get("initContainers", []), *pod.get("containers", []), *pod.get("ephemeralContainers", [])]
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            out.append(f"{key}")
    for volume in pod.get("volumes", []):
        kind = next(k for k in volume if k != "name")
        if kind not in RESTRICTED_VOLUMES:
            out.append(f"volume {volume['name']} of type {kind}")
    for sysctl in psc.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            out.append(f"sysctl {sysctl['name']}")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("hostProcess")
    if psc.get("runAsUser") == 0:
        out.append("pod runAsUser 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp == "Unconfined":
        out.append("pod seccomp Unconfined")
    for c in containers:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"{name}: hostProcess")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation not false")
        if not (sc.get("runAsNonRoot") is True or (psc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is not False)):
            out.append(f"{name}: runAsNonRoot not true")
        if sc.get("runAsUser") == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile {seccomp}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in caps.get("drop", []):
            out.append(f"{name}: capabilities not dropping ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: capabilities added {sorted(caps['add'])}")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"{name}: procMount")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{name}: hostPort")
        selinux = sc.get("seLinuxOptions") or {}
        if selinux.get("user") or selinux.get("role") or selinux.get("type", "") not in (
                "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"):
            out.append(f"{name}: seLinuxOptions")
    return out
