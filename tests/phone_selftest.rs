mod common;
use common::phone::*;
#[test]
fn placeholder() {
    let _ = CallOptions::default();
}
