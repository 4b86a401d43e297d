"""The Mosquitto recipe of a deployment: an ACL with one block per account and the
broker configuration that binds every client id to its user name.

Two rules make an account unable to act as another (docs/security.md, "Identities"):

* **Rights by account, never by pattern.** Mosquitto applies an ACL ``pattern`` line
  (``delgrad/v1/%u/status``) to every user, so a sensor or operator account could
  publish a status under its own name and appear as a device. Here each device,
  operator and sensor gets an explicit ``user`` block; device topics are writable
  by that device's account alone.
* **Client id = user name** (``use_username_as_clientid true`` under the listener).
  The broker ignores the id a client sends, so nobody can connect with a device's
  id and close the device's connection. Consequence: one connection per account at
  a time; a program that must run beside another (a monitor beside ``delgrad cmd``)
  logs in with an account of its own.

Pure text generation; :mod:`delgrad.tools._cmd_acl` writes the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from delgrad.errors import ConfigError
from delgrad.protocols import TopicKind, is_valid_name, subscription

__all__ = ["ACL_NAME", "CONF_NAME", "PASSWD_NAME", "Accounts", "acl_text", "conf_text"]

#: File names of the recipe (``delgrad acl --out DIR`` writes the first two).
ACL_NAME = "delgrad.acl"
CONF_NAME = "delgrad.conf"
PASSWD_NAME = "delgrad.passwd"

#: What a device publishes (its account alone may); what every operator reads.
DEVICE_PUBLISHES = (
    TopicKind.STATUS,
    TopicKind.ALARM,
    TopicKind.METRICS,
    TopicKind.PREDICTIONS,
    TopicKind.PARAMS_LATEST,
    TopicKind.PARAMS_DELTA,
    TopicKind.CMD_REPLY,
)
#: What a device reads: its commands and inputs.
DEVICE_READS = (TopicKind.CMD, TopicKind.EVENTS_IN, TopicKind.LABELS)
#: What a sensor publishes to the device it feeds.
SENSOR_PUBLISHES = (TopicKind.EVENTS_IN, TopicKind.LABELS)


@dataclass(frozen=True)
class Accounts:
    """The broker accounts of a deployment (user names; a device's is its device id).

    Attributes:
        devices: Device ids.
        operators: Operator accounts (command and watch every device).
        sensors: ``(device, account)`` pairs: the account feeds that device.
    """

    devices: tuple[str, ...]
    operators: tuple[str, ...] = ()
    sensors: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.devices:
            raise ConfigError("name at least one device (--devices)")
        roles: dict[str, str] = {}
        sensor_names = list(dict.fromkeys(name for _, name in self.sensors))
        for role, names in (
            ("device", self.devices),
            ("operator", self.operators),
            ("sensor", sensor_names),
        ):
            for name in names:
                if not is_valid_name(name):
                    raise ConfigError(f"{role} name {name!r} is not valid: 1-64 of [A-Za-z0-9_.-]")
                if name in roles:
                    was = roles[name]
                    twice = "given twice" if was == role else f"both {was} and {role}"
                    raise ConfigError(f"account {name!r} is {twice}: one account, one role")
                roles[name] = role
        for device, name in self.sensors:
            if device not in self.devices:
                raise ConfigError(f"sensor {name!r} feeds {device!r}, which is not among --devices")

    @property
    def names(self) -> tuple[str, ...]:
        """Every account, in the order of the ACL."""
        sensors = tuple(dict.fromkeys(name for _, name in self.sensors))
        return self.devices + self.operators + sensors


def parse_sensor(item: str) -> tuple[str, str]:
    """``DEVICE:ACCOUNT`` as a pair.

    Raises:
        ConfigError: no ``:`` or an empty side.
    """
    device, sep, name = item.partition(":")
    if not sep or not device or not name:
        raise ConfigError(f"--sensors takes DEVICE:ACCOUNT, got {item!r}")
    return device, name


def _block(title: str, user: str, lines: list[str]) -> list[str]:
    return [f"# --- {title}", f"user {user}", *lines, ""]


def acl_text(accounts: Accounts, *, command: str) -> str:
    """The ACL file: one explicit ``user`` block per account, no ``pattern`` line.

    Args:
        accounts: The deployment's accounts.
        command: The command line that made it (written into the header).
    """
    out = [
        "# DelGrad ACL for Mosquitto (acl_file), written by:",
        f"#   {command}",
        "# One block per account and no 'pattern' line: a device's topics are writable by",
        "# that device's account alone, so no other account can pose as a device. The broker",
        f"# binds client ids to user names ({CONF_NAME}: use_username_as_clientid true).",
        "# Topics: docs/protocol.md, section 5; why: docs/security.md, 'Identities'.",
        "",
    ]
    for device in accounts.devices:
        lines = [f"topic write {subscription(device, k)}" for k in DEVICE_PUBLISHES]
        lines += [f"topic read {subscription(device, k)}" for k in DEVICE_READS]
        out += _block(f"device {device}", device, lines)
    for operator in accounts.operators:
        lines = [f"topic write {subscription('+', TopicKind.CMD)}"]
        lines += [f"topic read {subscription('+', k)}" for k in DEVICE_PUBLISHES]
        out += _block(f"operator {operator}: commands and watches every device", operator, lines)
    feeds: dict[str, list[str]] = {}
    for device, name in accounts.sensors:
        feeds.setdefault(name, []).append(device)
    for name, devices in feeds.items():
        lines = [f"topic write {subscription(d, k)}" for d in devices for k in SENSOR_PUBLISHES]
        out += _block(f"sensor {name}: feeds {', '.join(devices)}", name, lines)
    return "\n".join(out)


def conf_text(*, etc: PurePath, command: str, port: int = 8883, bind: str | None = None) -> str:
    """The broker configuration: no anonymous access, passwords, the ACL, and a TLS
    listener whose client ids are the user names.

    Args:
        etc: Folder in which the broker finds ``delgrad.acl``, ``delgrad.passwd``,
            ``ca.pem``, ``broker.pem`` and ``broker.key``.
        command: The command line that made it (written into the header).
        port: TCP port of the listener.
        bind: Address to listen on (None: every interface).
    """
    listener = f"listener {port}" + (f" {bind}" if bind else "")
    return "\n".join(
        [
            "# Mosquitto 2.x for DelGrad devices, written by:",
            f"#   {command}",
            "# Run it alone (mosquitto -c delgrad.conf) or put it in the include_dir of the",
            "# main file (Debian: /etc/mosquitto/conf.d/). It starts only once the files it",
            "# names exist (docs/security.md, 'Deployment recipe', steps 1-3): the",
            f"# certificates, the password file (mosquitto_passwd -c {etc / PASSWD_NAME} USER)",
            f"# and the ACL ({ACL_NAME}, written with this file by the same command).",
            "",
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {etc / PASSWD_NAME}",
            f"acl_file {etc / ACL_NAME}",
            "",
            listener,
            "# The client id is the user name, whatever id the client sends: nobody can take",
            "# a device's id and close its connection. One connection per account at a time",
            "# (a second login replaces the first). A listener option: repeat it under every",
            "# listener; above the first one it would open a plain default listener on 1883.",
            "use_username_as_clientid true",
            f"cafile {etc / 'ca.pem'}",
            f"certfile {etc / 'broker.pem'}",
            f"keyfile {etc / 'broker.key'}",
            "require_certificate true",
            "tls_version tlsv1.2",
            "",
            "# The service refuses larger packets itself (broker.max_packet_bytes, announced as",
            "# the MQTT 5 Maximum Packet Size); the broker refuses them before they cost memory.",
            "max_packet_size 16842752",
            "max_queued_messages 1000",
            "",
        ]
    )
