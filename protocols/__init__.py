"""Wire protocol and message bus of DelGrad Runtime.

* Codec (pure): :func:`encode` / :func:`decode` of message objects in one msgpack
  envelope; message classes :class:`SpikeBatch`, :class:`SensorEvents`, :class:`Labels`,
  :class:`Predictions`, :class:`ParameterSnapshot`, :class:`ParameterDelta`,
  :class:`Metrics`, :class:`Status`, :class:`Command`, :class:`Reply`.
* Parameters: :class:`DeltaEncoder` (sender) and :class:`ParameterReplica` (receiver).
* Topics (pure): :func:`topic`, :func:`parse_topic`, :func:`subscription`, ``POLICIES``.
* Transport: :class:`Transport`, :class:`InProcessBus` / :class:`InProcessTransport`,
  :class:`MqttTransport`, :class:`EmbeddedBroker`, :class:`Publisher`.
* Broker URLs: :func:`parse_broker_url` (``mqtt://`` / ``mqtts://``) and
  :func:`transport_from_url`.

Importing this package does not import aiomqtt or amqtt; they load on first use.
See docs/protocol.md for the wire format.
"""

from delgrad.errors import (
    ArrayError,
    ChecksumError,
    ProtocolError,
    SchemaError,
    SizeLimitError,
    TransportError,
    VersionError,
)

from ._arrays import ALLOWED_DTYPES, MAX_ELEMENTS, decode_array, encode_array
from ._broker import EmbeddedBroker, is_loopback
from ._codec import (
    MAX_MESSAGE_BYTES,
    Envelope,
    Message,
    decode,
    encode,
    message_types,
    register_message,
    unpack_limited,
)
from ._inproc import InProcessBus, InProcessTransport
from ._messages import (
    COMMAND_NAMES,
    STATUS_STATES,
    TIME_UNITS,
    Alarm,
    Command,
    Labels,
    Metrics,
    Predictions,
    Reply,
    SensorEvents,
    SpikeBatch,
    Status,
)
from ._mqtt import CONTENT_TYPE, MqttTransport
from ._params import (
    DeltaEncoder,
    NeuronParams,
    ParameterDelta,
    ParameterReplica,
    ParameterSnapshot,
    ReplicaStats,
    TensorDelta,
    parameters_checksum,
)
from ._queues import IncomingMessage, TransportStats
from ._sensor_client import SensorClient
from ._topics import (
    POLICIES,
    ROOT,
    TopicInfo,
    TopicKind,
    TopicPolicy,
    is_valid_name,
    parse_topic,
    policy_for,
    subscription,
    topic,
    topic_matches,
)
from ._transport import Publisher, SequenceTracker, Transport, Will
from ._url import BrokerAddress, parse_broker_url, transport_from_url

__all__ = [
    "ALLOWED_DTYPES",
    "COMMAND_NAMES",
    "CONTENT_TYPE",
    "MAX_ELEMENTS",
    "MAX_MESSAGE_BYTES",
    "POLICIES",
    "ROOT",
    "STATUS_STATES",
    "TIME_UNITS",
    "Alarm",
    "ArrayError",
    "BrokerAddress",
    "ChecksumError",
    "Command",
    "DeltaEncoder",
    "EmbeddedBroker",
    "Envelope",
    "InProcessBus",
    "InProcessTransport",
    "IncomingMessage",
    "Labels",
    "Message",
    "Metrics",
    "MqttTransport",
    "NeuronParams",
    "ParameterDelta",
    "ParameterReplica",
    "ParameterSnapshot",
    "Predictions",
    "ProtocolError",
    "Publisher",
    "ReplicaStats",
    "Reply",
    "SchemaError",
    "SensorClient",
    "SensorEvents",
    "SequenceTracker",
    "SizeLimitError",
    "SpikeBatch",
    "Status",
    "TensorDelta",
    "TopicInfo",
    "TopicKind",
    "TopicPolicy",
    "Transport",
    "TransportError",
    "TransportStats",
    "VersionError",
    "Will",
    "decode",
    "decode_array",
    "encode",
    "encode_array",
    "is_loopback",
    "is_valid_name",
    "message_types",
    "parameters_checksum",
    "parse_broker_url",
    "parse_topic",
    "policy_for",
    "register_message",
    "subscription",
    "topic",
    "topic_matches",
    "transport_from_url",
    "unpack_limited",
]
