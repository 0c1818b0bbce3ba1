//! Salesforce ids: 18 characters, key prefix and a base-62 row number, with the case-safe suffix.

pub(super) const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An 18-character Salesforce id: key prefix, a 12-character body, and the case-safe suffix.
pub fn salesforce_id(prefix: &str, index: u64) -> String {
    let mut body = [b'0'; 12];
    let mut n = index;
    for slot in body.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    let mut id15 = String::with_capacity(18);
    id15.push_str(prefix);
    id15.push_str(std::str::from_utf8(&body).unwrap_or("000000000000"));
    let bytes = id15.as_bytes();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let mut suffix = String::with_capacity(3);
    for chunk in 0..3 {
        let mut bits = 0usize;
        for i in 0..5 {
            if bytes[chunk * 5 + i].is_ascii_uppercase() {
                bits |= 1 << i;
            }
        }
        suffix.push(alphabet[bits] as char);
    }
    id15 + &suffix
}

/// The row index of an id this org made, if it belongs to `prefix`.
pub fn index_of_id(prefix: &str, id: &str) -> Option<u64> {
    if id.len() != 18 || !id.starts_with(prefix) {
        return None;
    }
    let mut n = 0u64;
    for c in id[3..15].bytes() {
        let digit = BASE62.iter().position(|&b| b == c)? as u64;
        n = n.checked_mul(62)?.checked_add(digit)?;
    }
    (salesforce_id(prefix, n) == id).then_some(n)
}
