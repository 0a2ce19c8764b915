//! Calls: the menu state machine and the call flow that drives it.

pub mod menu;
