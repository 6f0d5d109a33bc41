//! The URI extension block (UEB, `allmydata/uri.py` `pack_extension`): every
//! share ends with it, and its hash is in the cap. It is `key:netstring(value)`
//! for each key in sorted order, integers in decimal, hashes as raw bytes.

use super::hash::Hash;

/// The contents of a CHK object's UEB (tahoe-lafs 1.20 writes exactly these
/// keys; `plaintext_hash` and friends of older versions are gone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ueb {
    /// The plaintext size.
    pub(crate) size: u64,
    /// The effective segment size (a multiple of k).
    pub(crate) segment_size: u64,
    /// ceil(size / segment_size).
    pub(crate) num_segments: u64,
    /// k.
    pub(crate) needed_shares: u16,
    /// N.
    pub(crate) total_shares: u16,
    /// The tail segment's size rounded up to a multiple of k (the
    /// `tail_codec_params` data size).
    pub(crate) tail_padded_size: u64,
    /// The flat hash of the whole ciphertext.
    pub(crate) crypttext_hash: Hash,
    /// The root of the crypttext (segment) hash tree.
    pub(crate) crypttext_root_hash: Hash,
    /// The root of the share hash tree.
    pub(crate) share_root_hash: Hash,
}

/// `"%d-%d-%d" % (data_size, k, n)`: the `codec_params` serialisation.
fn codec_params(data_size: u64, k: u16, n: u16) -> String {
    format!("{data_size}-{k}-{n}")
}

impl Ueb {
    /// The packed bytes (`pack_extension`), keys in sorted order.
    pub(crate) fn pack(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(500);
        let mut field = |key: &str, value: &[u8]| {
            out.extend_from_slice(key.as_bytes());
            out.push(b':');
            super::hash::push_netstring(&mut out, value);
        };
        field("codec_name", b"crs");
        field(
            "codec_params",
            codec_params(self.segment_size, self.needed_shares, self.total_shares).as_bytes(),
        );
        field("crypttext_hash", &self.crypttext_hash);
        field("crypttext_root_hash", &self.crypttext_root_hash);
        field("needed_shares", self.needed_shares.to_string().as_bytes());
        field("num_segments", self.num_segments.to_string().as_bytes());
        field("segment_size", self.segment_size.to_string().as_bytes());
        field("share_root_hash", &self.share_root_hash);
        field("size", self.size.to_string().as_bytes());
        field(
            "tail_codec_params",
            codec_params(self.tail_padded_size, self.needed_shares, self.total_shares).as_bytes(),
        );
        field("total_shares", self.total_shares.to_string().as_bytes());
        out
    }

    /// Parses and checks a UEB: every key present once, numbers in range
    /// and consistent with each other (so later arithmetic cannot overflow
    /// or divide by zero). `Err` names the problem.
    pub(crate) fn unpack(mut data: &[u8]) -> Result<Ueb, String> {
        let mut fields: Vec<(&[u8], &[u8])> = Vec::new();
        while !data.is_empty() {
            let colon = data
                .iter()
                .position(|&b| b == b':')
                .ok_or("a key without ':'")?;
            let key = &data[..colon];
            data = &data[colon + 1..];
            let colon = data
                .iter()
                .position(|&b| b == b':')
                .ok_or("a value without a length")?;
            let len: usize = std::str::from_utf8(&data[..colon])
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .ok_or("a bad value length")?;
            data = &data[colon + 1..];
            if data.len() < len + 1 || data[len] != b',' {
                return Err("a truncated value".into());
            }
            if fields.iter().any(|(k, _)| *k == key) {
                return Err(format!("key {} twice", String::from_utf8_lossy(key)));
            }
            fields.push((key, &data[..len]));
            data = &data[len + 1..];
        }
        let get = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| *k == key.as_bytes())
                .map(|(_, v)| *v)
                .ok_or_else(|| format!("no {key}"))
        };
        let num = |key: &str| -> Result<u64, String> {
            std::str::from_utf8(get(key)?)
                .ok()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("{key} is not a number"))
        };
        let hash = |key: &str| -> Result<Hash, String> {
            get(key)?
                .try_into()
                .map_err(|_| format!("{key} is not 32 bytes"))
        };
        let small = |key: &str| -> Result<u16, String> {
            u16::try_from(num(key)?)
                .ok()
                .filter(|v| (1..=256).contains(v))
                .ok_or_else(|| format!("{key} out of range"))
        };
        let ueb = Ueb {
            size: num("size")?,
            segment_size: num("segment_size")?,
            num_segments: num("num_segments")?,
            needed_shares: small("needed_shares")?,
            total_shares: small("total_shares")?,
            tail_padded_size: 0,
            crypttext_hash: hash("crypttext_hash")?,
            crypttext_root_hash: hash("crypttext_root_hash")?,
            share_root_hash: hash("share_root_hash")?,
        };
        if get("codec_name")? != b"crs" {
            return Err("codec_name is not crs".into());
        }
        let k = u64::from(ueb.needed_shares);
        if ueb.needed_shares > ueb.total_shares
            || ueb.segment_size == 0
            || !ueb.segment_size.is_multiple_of(k)
            || ueb.size == 0
            || ueb.num_segments != ueb.size.div_ceil(ueb.segment_size)
            || ueb.num_segments > super::MAX_SEGMENTS
            || ueb.segment_size > super::MAX_SEGMENT_SIZE_LIMIT
        {
            return Err("inconsistent sizes or share counts".into());
        }
        if get("codec_params")?
            != codec_params(ueb.segment_size, ueb.needed_shares, ueb.total_shares).as_bytes()
        {
            return Err("codec_params disagree with the other fields".into());
        }
        let tail = match ueb.size % ueb.segment_size {
            0 => ueb.segment_size,
            t => t,
        };
        let tail_padded_size = tail.next_multiple_of(k);
        if get("tail_codec_params")?
            != codec_params(tail_padded_size, ueb.needed_shares, ueb.total_shares).as_bytes()
        {
            return Err("tail_codec_params disagree with the other fields".into());
        }
        Ok(Ueb {
            tail_padded_size,
            ..ueb
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Ueb {
        Ueb {
            size: 1000,
            segment_size: 300,
            num_segments: 4,
            needed_shares: 3,
            total_shares: 10,
            tail_padded_size: 102,
            crypttext_hash: [1; 32],
            crypttext_root_hash: [2; 32],
            share_root_hash: [3; 32],
        }
    }

    #[test]
    fn packs_in_key_order_and_round_trips() {
        let packed = sample().pack();
        let text = String::from_utf8_lossy(&packed);
        assert!(text.starts_with("codec_name:3:crs,codec_params:8:300-3-10,crypttext_hash:32:"));
        assert!(text.ends_with("size:4:1000,tail_codec_params:8:102-3-10,total_shares:2:10,"));
        assert_eq!(Ueb::unpack(&packed).unwrap(), sample());
    }

    #[test]
    fn rejects_bad_blocks() {
        let packed = sample().pack();
        for cut in [1, 10, packed.len() - 1] {
            assert!(Ueb::unpack(&packed[..cut]).is_err(), "{cut}");
        }
        let mut bad = sample();
        bad.num_segments = 5;
        assert!(Ueb::unpack(&bad.pack()).is_err());
        let mut bad = sample();
        bad.needed_shares = 11;
        assert!(Ueb::unpack(&bad.pack()).is_err());
        let text = String::from_utf8(sample().pack()).unwrap_or_default();
        assert!(Ueb::unpack(text.replace("crs", "xyz").as_bytes()).is_err());
        assert!(Ueb::unpack(b"size:99999999999999999999:1,").is_err());
        let mut huge = sample();
        huge.segment_size = 3;
        huge.size = 3 << 40;
        huge.num_segments = 1 << 40;
        huge.tail_padded_size = 3;
        assert!(Ueb::unpack(&huge.pack()).is_err(), "too many segments");
    }
}
