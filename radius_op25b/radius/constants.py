"""Numbers of the RADIUS wire format: packet codes, attribute types, vendors and size limits.
Facts from RFC 2865/2866/2868/2869/3162/3579/4849/5176/5997 and RFC 2548 (Microsoft).
"""

from __future__ import annotations

from typing import Final

# Packet codes (RFC 2865 §3, RFC 2866 §3, RFC 5997 §2, RFC 5176 §2.3).
ACCESS_REQUEST: Final = 1
ACCESS_ACCEPT: Final = 2
ACCESS_REJECT: Final = 3
ACCOUNTING_REQUEST: Final = 4
ACCOUNTING_RESPONSE: Final = 5
ACCESS_CHALLENGE: Final = 11
STATUS_SERVER: Final = 12
DISCONNECT_REQUEST: Final = 40
DISCONNECT_ACK: Final = 41
DISCONNECT_NAK: Final = 42
COA_REQUEST: Final = 43
COA_ACK: Final = 44
COA_NAK: Final = 45

CODE_NAMES: Final[dict[int, str]] = {
    ACCESS_REQUEST: "Access-Request",
    ACCESS_ACCEPT: "Access-Accept",
    ACCESS_REJECT: "Access-Reject",
    ACCOUNTING_REQUEST: "Accounting-Request",
    ACCOUNTING_RESPONSE: "Accounting-Response",
    ACCESS_CHALLENGE: "Access-Challenge",
    STATUS_SERVER: "Status-Server",
    DISCONNECT_REQUEST: "Disconnect-Request",
    DISCONNECT_ACK: "Disconnect-ACK",
    DISCONNECT_NAK: "Disconnect-NAK",
    COA_REQUEST: "CoA-Request",
    COA_ACK: "CoA-ACK",
    COA_NAK: "CoA-NAK",
}

# Attribute types, under the names FreeRADIUS gives them (upper case, '-' -> '_').
USER_NAME: Final = 1
USER_PASSWORD: Final = 2
CHAP_PASSWORD: Final = 3
NAS_IP_ADDRESS: Final = 4
NAS_PORT: Final = 5
SERVICE_TYPE: Final = 6
FRAMED_PROTOCOL: Final = 7
FRAMED_IP_ADDRESS: Final = 8
FILTER_ID: Final = 11
REPLY_MESSAGE: Final = 18
STATE: Final = 24
CLASS: Final = 25
VENDOR_SPECIFIC: Final = 26
SESSION_TIMEOUT: Final = 27
CALLED_STATION_ID: Final = 30
CALLING_STATION_ID: Final = 31
NAS_IDENTIFIER: Final = 32
PROXY_STATE: Final = 33
ACCT_STATUS_TYPE: Final = 40
ACCT_DELAY_TIME: Final = 41
ACCT_INPUT_OCTETS: Final = 42
ACCT_OUTPUT_OCTETS: Final = 43
ACCT_SESSION_ID: Final = 44
ACCT_SESSION_TIME: Final = 46
ACCT_TERMINATE_CAUSE: Final = 49
ACCT_INPUT_GIGAWORDS: Final = 52
ACCT_OUTPUT_GIGAWORDS: Final = 53
EVENT_TIMESTAMP: Final = 55
CHAP_CHALLENGE: Final = 60
NAS_PORT_TYPE: Final = 61
TUNNEL_PASSWORD: Final = 69
EAP_MESSAGE: Final = 79
MESSAGE_AUTHENTICATOR: Final = 80
NAS_PORT_ID: Final = 87
NAS_FILTER_RULE: Final = 92
NAS_IPV6_ADDRESS: Final = 95
FRAMED_IPV6_PREFIX: Final = 97
ERROR_CAUSE: Final = 101
DELEGATED_IPV6_PREFIX: Final = 123
OPERATOR_NAME: Final = 126

# Acct-Status-Type values (RFC 2866 §5.1).
ACCT_STATUS_START: Final = 1
ACCT_STATUS_STOP: Final = 2
ACCT_STATUS_INTERIM_UPDATE: Final = 3
ACCT_STATUS_ACCOUNTING_ON: Final = 7
ACCT_STATUS_ACCOUNTING_OFF: Final = 8

# Vendors (IANA Private Enterprise Numbers) and the vendor attributes this layer must know.
VENDOR_MICROSOFT: Final = 311
MS_CHAP_MPPE_KEYS: Final = 12
MS_MPPE_SEND_KEY: Final = 16
MS_MPPE_RECV_KEY: Final = 17

# Sizes (RFC 2865 §3 and §5).
HEADER_LENGTH: Final = 20
AUTHENTICATOR_LENGTH: Final = 16
MIN_PACKET_LENGTH: Final = 20
MAX_PACKET_LENGTH: Final = 4096
MAX_VALUE_LENGTH: Final = 253  # one octet of Length, minus Type and Length themselves
MAX_VSA_PAYLOAD: Final = 247  # 253 - Vendor-Id (4) - Vendor-Type (1) - Vendor-Length (1)
MESSAGE_AUTHENTICATOR_LENGTH: Final = 18  # the whole attribute: Type, Length, 16 octets
