//! What every consumer request after ATTACH_REGION names: the attachment, by its id.
//!
//! The driver hands out a non-zero id per attachment that is never reused in one driver run, so
//! a stale id can only miss, never hit someone else's attachment. DETACH_REGION,
//! SET_DOORBELL_EVENT and RING_GUEST answer with nothing but the id (the 24-byte
//! [`AttachmentReply`] shape); the macro here makes those three reply types so each keeps its
//! own [`MessageKind`].

use core::num::NonZeroU64;

use super::error::{ProtoError, ProtoResult};

/// The id of an attachment: non-zero, unique in a driver run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttachmentId(NonZeroU64);

impl AttachmentId {
    /// The id `value`, or `None` for 0.
    pub const fn new(value: u64) -> Option<Self> {
        match NonZeroU64::new(value) {
            Some(id) => Some(Self(id)),
            None => None,
        }
    }

    /// The id `value` read from the wire, or [`ProtoError::ZeroAttachment`].
    pub const fn from_wire(value: u64) -> ProtoResult<Self> {
        match Self::new(value) {
            Some(id) => Ok(id),
            None => Err(ProtoError::ZeroAttachment),
        }
    }

    /// The wire value.
    pub const fn get(self) -> u64 {
        self.0.get()
    }
}

/// Defines a 24-byte reply that carries only `attachment`, with its constructor and its parser.
macro_rules! attachment_reply {
    ($(#[$doc:meta])* $name:ident, $kind:ident, $parse:ident, $what:literal) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(
            Clone,
            Copy,
            Debug,
            PartialEq,
            Eq,
            zerocopy::FromBytes,
            zerocopy::IntoBytes,
            zerocopy::KnownLayout,
            zerocopy::Immutable,
            zerocopy::Unaligned,
        )]
        pub struct $name {
            #[doc = concat!("Kind [`MessageKind::", stringify!($kind), "`].")]
            pub header: $crate::ioctl::MessageHeader,
            /// The attachment the request named; non-zero.
            pub attachment: zerocopy::byteorder::little_endian::U64,
        }

        const _: () = assert!(size_of::<$name>() == 24);

        impl $crate::ioctl::WireMessage for $name {
            const KIND: $crate::ioctl::MessageKind = $crate::ioctl::MessageKind::$kind;
        }

        impl $name {
            /// The reply for `attachment`.
            pub fn new(attachment: $crate::ioctl::AttachmentId) -> Self {
                Self {
                    header: <Self as $crate::ioctl::WireMessage>::header_for_kind(),
                    attachment: zerocopy::byteorder::little_endian::U64::new(attachment.get()),
                }
            }
        }

        #[doc = concat!("Validates a ", $what, " output buffer (consumer side): framing, then `attachment` non-zero.")]
        pub fn $parse(bytes: &[u8]) -> $crate::ioctl::ProtoResult<$crate::ioctl::AttachmentId> {
            let reply = super::header::unframe::<$name>(bytes)?;
            $crate::ioctl::AttachmentId::from_wire(reply.attachment.get())
        }
    };
}

pub(crate) use attachment_reply;

/// Defines a 32-byte request that carries `attachment` and a reserved `u64`, with its builder
/// and its parser.
macro_rules! attachment_request {
    ($(#[$doc:meta])* $name:ident, $kind:ident, $parse:ident, $reserved:ident, $what:literal) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(
            Clone,
            Copy,
            Debug,
            PartialEq,
            Eq,
            zerocopy::FromBytes,
            zerocopy::IntoBytes,
            zerocopy::KnownLayout,
            zerocopy::Immutable,
            zerocopy::Unaligned,
        )]
        pub struct $name {
            #[doc = concat!("Kind [`MessageKind::", stringify!($kind), "`].")]
            pub header: $crate::ioctl::MessageHeader,
            /// The attachment; non-zero.
            pub attachment: zerocopy::byteorder::little_endian::U64,
            /// Must be zero.
            pub reserved: zerocopy::byteorder::little_endian::U64,
        }

        const _: () = assert!(size_of::<$name>() == 32);

        impl $crate::ioctl::WireMessage for $name {
            const KIND: $crate::ioctl::MessageKind = $crate::ioctl::MessageKind::$kind;
        }

        impl $name {
            /// The request for `attachment`.
            pub fn build(attachment: $crate::ioctl::AttachmentId) -> Self {
                Self {
                    header: <Self as $crate::ioctl::WireMessage>::header_for_kind(),
                    attachment: zerocopy::byteorder::little_endian::U64::new(attachment.get()),
                    reserved: zerocopy::byteorder::little_endian::U64::new(0),
                }
            }
        }

        #[doc = concat!("Validates a ", $what, " input buffer: framing, then `attachment` non-zero, `reserved` zero.")]
        pub fn $parse(bytes: &[u8]) -> $crate::ioctl::ProtoResult<$crate::ioctl::AttachmentId> {
            let request = super::header::unframe::<$name>(bytes)?;
            let attachment = $crate::ioctl::AttachmentId::from_wire(request.attachment.get())?;
            super::header::check_zero(
                $crate::ioctl::ReservedField::$reserved,
                request.reserved.get(),
            )?;
            Ok(attachment)
        }
    };
}

pub(crate) use attachment_request;
