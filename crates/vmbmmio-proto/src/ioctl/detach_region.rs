//! DETACH_REGION: a host consumer ends one attachment.
//!
//! It works also after the owning session closed (the attachment outlives its session until the
//! consumer detaches or closes its file handle). The section handle ATTACH_REGION returned is
//! the consumer's: detaching does not close it, and a view mapped from it stays valid memory.

use super::attachment::{attachment_reply, attachment_request};

attachment_request!(
    /// DETACH_REGION request, 32 bytes: `attachment`, reserved `u64`.
    DetachRegionRequest,
    DetachRegionRequest,
    parse_detach_region,
    DetachRegion,
    "DETACH_REGION"
);

attachment_reply!(
    /// DETACH_REGION reply, 24 bytes: the attachment that ended.
    DetachRegionReply,
    DetachRegionReply,
    parse_detach_region_reply,
    "DETACH_REGION"
);
