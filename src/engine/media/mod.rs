//! Media: the classic-SIP RTP session (RTP/RTCP framing, statistics, DTMF) and SDES-SRTP.

pub mod rtp_session;
pub mod srtp;
