//! MQTT 5.0 reason codes (spec section 2.4), and the MQTT 3.x CONNACK return codes they map to.

/// A reason code. The same byte means different things on different packets (0x00 is Success,
/// Normal Disconnection or Granted QoS 0), so the variant names follow the most common meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum ReasonCode {
    #[default]
    Success = 0x00,
    GrantedQoS1 = 0x01,
    GrantedQoS2 = 0x02,
    DisconnectWithWillMessage = 0x04,
    NoMatchingSubscribers = 0x10,
    NoSubscriptionExisted = 0x11,
    ContinueAuthentication = 0x18,
    ReAuthenticate = 0x19,
    UnspecifiedError = 0x80,
    MalformedPacket = 0x81,
    ProtocolError = 0x82,
    ImplementationSpecificError = 0x83,
    UnsupportedProtocolVersion = 0x84,
    ClientIdentifierNotValid = 0x85,
    BadUserNameOrPassword = 0x86,
    NotAuthorized = 0x87,
    ServerUnavailable = 0x88,
    ServerBusy = 0x89,
    Banned = 0x8A,
    ServerShuttingDown = 0x8B,
    BadAuthenticationMethod = 0x8C,
    KeepAliveTimeout = 0x8D,
    SessionTakenOver = 0x8E,
    TopicFilterInvalid = 0x8F,
    TopicNameInvalid = 0x90,
    PacketIdentifierInUse = 0x91,
    PacketIdentifierNotFound = 0x92,
    ReceiveMaximumExceeded = 0x93,
    TopicAliasInvalid = 0x94,
    PacketTooLarge = 0x95,
    MessageRateTooHigh = 0x96,
    QuotaExceeded = 0x97,
    AdministrativeAction = 0x98,
    PayloadFormatInvalid = 0x99,
    RetainNotSupported = 0x9A,
    QoSNotSupported = 0x9B,
    UseAnotherServer = 0x9C,
    ServerMoved = 0x9D,
    SharedSubscriptionsNotSupported = 0x9E,
    ConnectionRateExceeded = 0x9F,
    MaximumConnectTime = 0xA0,
    SubscriptionIdentifiersNotSupported = 0xA1,
    WildcardSubscriptionsNotSupported = 0xA2,
}

/// The packets that carry a reason code; each allows its own subset (spec 2.4, table 2-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonContext {
    ConnAck,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    SubAck,
    UnsubAck,
    Disconnect,
    Auth,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 43] = {
        use ReasonCode::*;
        [
            Success,
            GrantedQoS1,
            GrantedQoS2,
            DisconnectWithWillMessage,
            NoMatchingSubscribers,
            NoSubscriptionExisted,
            ContinueAuthentication,
            ReAuthenticate,
            UnspecifiedError,
            MalformedPacket,
            ProtocolError,
            ImplementationSpecificError,
            UnsupportedProtocolVersion,
            ClientIdentifierNotValid,
            BadUserNameOrPassword,
            NotAuthorized,
            ServerUnavailable,
            ServerBusy,
            Banned,
            ServerShuttingDown,
            BadAuthenticationMethod,
            KeepAliveTimeout,
            SessionTakenOver,
            TopicFilterInvalid,
            TopicNameInvalid,
            PacketIdentifierInUse,
            PacketIdentifierNotFound,
            ReceiveMaximumExceeded,
            TopicAliasInvalid,
            PacketTooLarge,
            MessageRateTooHigh,
            QuotaExceeded,
            AdministrativeAction,
            PayloadFormatInvalid,
            RetainNotSupported,
            QoSNotSupported,
            UseAnotherServer,
            ServerMoved,
            SharedSubscriptionsNotSupported,
            ConnectionRateExceeded,
            MaximumConnectTime,
            SubscriptionIdentifiersNotSupported,
            WildcardSubscriptionsNotSupported,
        ]
    };

    pub fn from_u8(byte: u8) -> Option<ReasonCode> {
        // ALL is sorted by value, so a binary search finds the variant.
        Self::ALL
            .binary_search_by_key(&byte, |c| *c as u8)
            .ok()
            .map(|i| Self::ALL[i])
    }

    pub fn is_error(self) -> bool {
        self as u8 >= 0x80
    }

    /// Whether the spec allows this code on the given packet.
    pub fn allowed_in(self, ctx: ReasonContext) -> bool {
        use ReasonCode::*;
        use ReasonContext as C;
        let v = self as u8;
        match ctx {
            C::ConnAck => {
                v == 0
                    || matches!(
                        self,
                        UnspecifiedError
                            | MalformedPacket
                            | ProtocolError
                            | ImplementationSpecificError
                            | UnsupportedProtocolVersion
                            | ClientIdentifierNotValid
                            | BadUserNameOrPassword
                            | NotAuthorized
                            | ServerUnavailable
                            | ServerBusy
                            | Banned
                            | BadAuthenticationMethod
                            | TopicNameInvalid
                            | PacketTooLarge
                            | QuotaExceeded
                            | PayloadFormatInvalid
                            | RetainNotSupported
                            | QoSNotSupported
                            | UseAnotherServer
                            | ServerMoved
                            | ConnectionRateExceeded
                    )
            }
            C::PubAck | C::PubRec => matches!(
                self,
                Success
                    | NoMatchingSubscribers
                    | UnspecifiedError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | TopicNameInvalid
                    | PacketIdentifierInUse
                    | QuotaExceeded
                    | PayloadFormatInvalid
            ),
            C::PubRel | C::PubComp => matches!(self, Success | PacketIdentifierNotFound),
            C::SubAck => matches!(
                self,
                Success
                    | GrantedQoS1
                    | GrantedQoS2
                    | UnspecifiedError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | TopicFilterInvalid
                    | PacketIdentifierInUse
                    | QuotaExceeded
                    | SharedSubscriptionsNotSupported
                    | SubscriptionIdentifiersNotSupported
                    | WildcardSubscriptionsNotSupported
            ),
            C::UnsubAck => matches!(
                self,
                Success
                    | NoSubscriptionExisted
                    | UnspecifiedError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | TopicFilterInvalid
                    | PacketIdentifierInUse
            ),
            C::Disconnect => {
                v == 0
                    || matches!(
                        self,
                        DisconnectWithWillMessage
                            | UnspecifiedError
                            | MalformedPacket
                            | ProtocolError
                            | ImplementationSpecificError
                            | NotAuthorized
                            | ServerBusy
                            | ServerShuttingDown
                            | KeepAliveTimeout
                            | SessionTakenOver
                            | TopicFilterInvalid
                            | TopicNameInvalid
                            | ReceiveMaximumExceeded
                            | TopicAliasInvalid
                            | PacketTooLarge
                            | MessageRateTooHigh
                            | QuotaExceeded
                            | AdministrativeAction
                            | PayloadFormatInvalid
                            | RetainNotSupported
                            | QoSNotSupported
                            | UseAnotherServer
                            | ServerMoved
                            | SharedSubscriptionsNotSupported
                            | ConnectionRateExceeded
                            | MaximumConnectTime
                            | SubscriptionIdentifiersNotSupported
                            | WildcardSubscriptionsNotSupported
                    )
            }
            C::Auth => matches!(self, Success | ContinueAuthentication | ReAuthenticate),
        }
    }

    /// The MQTT 3.x CONNACK return code closest to this reason code.
    pub fn to_v3_connack(self) -> u8 {
        use ReasonCode::*;
        match self {
            Success => 0,
            UnsupportedProtocolVersion => 1,
            ClientIdentifierNotValid => 2,
            BadUserNameOrPassword => 4,
            NotAuthorized | Banned | BadAuthenticationMethod => 5,
            _ => 3, // Server unavailable
        }
    }

    pub fn from_v3_connack(code: u8) -> Option<ReasonCode> {
        use ReasonCode::*;
        Some(match code {
            0 => Success,
            1 => UnsupportedProtocolVersion,
            2 => ClientIdentifierNotValid,
            3 => ServerUnavailable,
            4 => BadUserNameOrPassword,
            5 => NotAuthorized,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_byte() {
        for code in ReasonCode::ALL {
            assert_eq!(ReasonCode::from_u8(code as u8), Some(code));
        }
        assert_eq!(ReasonCode::from_u8(0x03), None);
        assert_eq!(ReasonCode::from_u8(0xFF), None);
    }

    #[test]
    fn contexts_follow_the_spec_table() {
        assert!(ReasonCode::NoMatchingSubscribers.allowed_in(ReasonContext::PubAck));
        assert!(!ReasonCode::NoMatchingSubscribers.allowed_in(ReasonContext::PubRel));
        assert!(ReasonCode::GrantedQoS2.allowed_in(ReasonContext::SubAck));
        assert!(!ReasonCode::GrantedQoS2.allowed_in(ReasonContext::PubAck));
        assert!(ReasonCode::SessionTakenOver.allowed_in(ReasonContext::Disconnect));
        assert!(!ReasonCode::SessionTakenOver.allowed_in(ReasonContext::ConnAck));
        assert!(ReasonCode::ReAuthenticate.allowed_in(ReasonContext::Auth));
    }

    #[test]
    fn v3_connack_codes_map_both_ways() {
        for code in 0..=5u8 {
            let reason = ReasonCode::from_v3_connack(code).unwrap();
            assert_eq!(reason.to_v3_connack(), code);
        }
        assert_eq!(ReasonCode::from_v3_connack(6), None);
    }
}
