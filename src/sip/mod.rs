//! SIP: our thin layer over rsipstack, so the call flow never depends on its API churn.

pub mod sdp;
