//! The zfec erasure code (`zfec/fec.c`, Luigi Rizzo's Reed–Solomon code as
//! zfec builds it), written from its description, not its code.
//!
//! Arithmetic is in GF(2^8) with the primitive polynomial x^8 + x^4 + x^3 +
//! x^2 + 1 (0x11d) and generator 2. The n×k encoding matrix is systematic:
//! take the Vandermonde matrix whose row 0 is (1, 0, …, 0) (the point 0) and
//! whose row r ≥ 1 is (a^0, a^(r-1), a^(2(r-1)), …) (the point a^(r-1)),
//! multiply it on the right by the inverse of its top k×k square: the top
//! becomes the identity (shares 0..k are the input blocks themselves) and
//! rows k..n make the check shares. Other Reed–Solomon crates choose other
//! points or another matrix, and their check shares differ for n ≥ 4.

use std::sync::OnceLock;

use super::ChkError;

/// exp[i] = 2^i in GF(2^8), for i in 0..510 (so sums of two logs need no
/// reduction).
const EXP: [u8; 510] = {
    let mut t = [0u8; 510];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 510 {
        t[i] = x as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= 0x11d;
        }
        i += 1;
    }
    t
};

/// log[x] for x ≠ 0 (log[0] is unused).
const LOG: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        t[EXP[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// a·b in GF(2^8).
pub(crate) const fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        0
    } else {
        EXP[LOG[a as usize] as usize + LOG[b as usize] as usize]
    }
}

/// 1/a in GF(2^8), a ≠ 0.
const fn inv(a: u8) -> u8 {
    EXP[255 - LOG[a as usize] as usize]
}

/// The full multiplication table: MUL[c][x] = c·x, one 256-byte row a
/// coefficient, the inner loop of encoding and decoding.
fn mul_table() -> &'static [[u8; 256]; 256] {
    static TABLE: OnceLock<Box<[[u8; 256]; 256]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new([[0u8; 256]; 256]);
        for (c, row) in t.iter_mut().enumerate() {
            for (x, v) in row.iter_mut().enumerate() {
                *v = mul(c as u8, x as u8);
            }
        }
        t
    })
}

/// out ^= c · input, byte by byte.
fn mul_add(out: &mut [u8], input: &[u8], c: u8) {
    match c {
        0 => {}
        1 => out.iter_mut().zip(input).for_each(|(o, i)| *o ^= i),
        _ => {
            let row = &mul_table()[usize::from(c)];
            // Plain indexing, 8 bytes a step: fast with optimisation, and
            // bearable without (the test profile builds this crate at
            // opt-level 0, and the vector test encodes 101-of-256).
            let len = out.len().min(input.len());
            let (out, input) = (&mut out[..len], &input[..len]);
            let mut i = 0;
            while i + 8 <= len {
                out[i] ^= row[input[i] as usize];
                out[i + 1] ^= row[input[i + 1] as usize];
                out[i + 2] ^= row[input[i + 2] as usize];
                out[i + 3] ^= row[input[i + 3] as usize];
                out[i + 4] ^= row[input[i + 4] as usize];
                out[i + 5] ^= row[input[i + 5] as usize];
                out[i + 6] ^= row[input[i + 6] as usize];
                out[i + 7] ^= row[input[i + 7] as usize];
                i += 8;
            }
            while i < len {
                out[i] ^= row[input[i] as usize];
                i += 1;
            }
        }
    }
}

/// Inverts the k×k matrix `m` (row-major) in place by Gauss–Jordan
/// elimination. The matrices inverted here (a Vandermonde square, or k rows
/// of the encoding matrix) are never singular; `None` says one was.
fn invert(m: &mut [u8], k: usize) -> Option<()> {
    let mut inv_m = vec![0u8; k * k];
    for i in 0..k {
        inv_m[i * k + i] = 1;
    }
    for col in 0..k {
        let pivot = (col..k).find(|&r| m[r * k + col] != 0)?;
        if pivot != col {
            for j in 0..k {
                m.swap(pivot * k + j, col * k + j);
                inv_m.swap(pivot * k + j, col * k + j);
            }
        }
        let p = inv(m[col * k + col]);
        for j in 0..k {
            m[col * k + j] = mul(m[col * k + j], p);
            inv_m[col * k + j] = mul(inv_m[col * k + j], p);
        }
        for r in 0..k {
            let f = m[r * k + col];
            if r == col || f == 0 {
                continue;
            }
            for j in 0..k {
                m[r * k + j] ^= mul(f, m[col * k + j]);
                inv_m[r * k + j] ^= mul(f, inv_m[col * k + j]);
            }
        }
    }
    m.copy_from_slice(&inv_m);
    Some(())
}

/// A k-of-n zfec code.
#[derive(Clone, Debug)]
pub(crate) struct Fec {
    k: usize,
    n: usize,
    /// The n×k systematic encoding matrix, row-major.
    matrix: Vec<u8>,
}

impl Fec {
    /// The code with 1 ≤ k ≤ n ≤ 256.
    pub(crate) fn new(k: usize, n: usize) -> Result<Fec, ChkError> {
        if k == 0 || k > n || n > 256 {
            return Err(ChkError::Params(format!(
                "zfec {k}-of-{n}: need 1 <= k <= n <= 256"
            )));
        }
        // The Vandermonde matrix: row 0 is the point 0, row r the point a^(r-1).
        let mut vdm = vec![0u8; n * k];
        vdm[0] = 1;
        for r in 1..n {
            for c in 0..k {
                vdm[r * k + c] = EXP[((r - 1) * c) % 255];
            }
        }
        let mut top = vdm[..k * k].to_vec();
        invert(&mut top, k)
            .ok_or_else(|| ChkError::Params(format!("zfec {k}-of-{n}: singular matrix")))?;
        let mut matrix = vec![0u8; n * k];
        for i in 0..k {
            matrix[i * k + i] = 1;
        }
        for r in k..n {
            for c in 0..k {
                let mut acc = 0u8;
                for j in 0..k {
                    acc ^= mul(vdm[r * k + j], top[j * k + c]);
                }
                matrix[r * k + c] = acc;
            }
        }
        Ok(Fec { k, n, matrix })
    }

    /// Computes check share `shnum` (k ≤ shnum < n) of the k input blocks
    /// (all of `out.len()` bytes) into `out`.
    pub(crate) fn encode_one(&self, inputs: &[&[u8]], shnum: usize, out: &mut [u8]) {
        out.fill(0);
        let row = &self.matrix[shnum * self.k..(shnum + 1) * self.k];
        for (input, &c) in inputs.iter().zip(row) {
            mul_add(out, input, c);
        }
    }

    /// All n shares of k equal-sized input blocks: shares 0..k are copies of
    /// the inputs, k..n the check shares (`zfec.Encoder(k, n).encode`).
    #[cfg(test)]
    pub(crate) fn encode(&self, inputs: &[&[u8]]) -> Vec<Vec<u8>> {
        let len = inputs.first().map_or(0, |b| b.len());
        let mut shares: Vec<Vec<u8>> = inputs.iter().map(|b| b.to_vec()).collect();
        for shnum in self.k..self.n {
            let mut out = vec![0u8; len];
            self.encode_one(inputs, shnum, &mut out);
            shares.push(out);
        }
        shares
    }

    /// The k input blocks from any k distinct shares (number, bytes), all of
    /// the same length (`zfec.Decoder(k, n).decode`).
    pub(crate) fn decode(&self, shares: &[(usize, &[u8])]) -> Result<Vec<Vec<u8>>, ChkError> {
        let k = self.k;
        if shares.len() != k {
            return Err(ChkError::Params(format!(
                "zfec decode needs {k} shares, got {}",
                shares.len()
            )));
        }
        let len = shares[0].1.len();
        let mut seen = vec![false; self.n];
        for &(shnum, block) in shares {
            if shnum >= self.n || std::mem::replace(&mut seen[shnum], true) {
                return Err(ChkError::Params(format!(
                    "zfec decode: share number {shnum} out of range or repeated"
                )));
            }
            if block.len() != len {
                return Err(ChkError::Params(
                    "zfec decode: blocks of different sizes".into(),
                ));
            }
        }
        let mut m = Vec::with_capacity(k * k);
        for &(shnum, _) in shares {
            m.extend_from_slice(&self.matrix[shnum * k..(shnum + 1) * k]);
        }
        invert(&mut m, k).ok_or_else(|| ChkError::Params("zfec decode: singular matrix".into()))?;
        let mut out = Vec::with_capacity(k);
        for i in 0..k {
            if let Some(&(_, block)) = shares.iter().find(|(s, _)| *s == i) {
                out.push(block.to_vec());
                continue;
            }
            let mut block = vec![0u8; len];
            for (j, &(_, input)) in shares.iter().enumerate() {
                mul_add(&mut block, input, m[i * k + j]);
            }
            out.push(block);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_tables() {
        assert_eq!(EXP[8], 0x1d);
        assert_eq!(mul(2, 0x80), 0x1d);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "{a}");
        }
    }

    #[test]
    fn systematic_and_any_k_decode() {
        let fec = Fec::new(3, 10).unwrap();
        let data: Vec<Vec<u8>> = (0..3u8)
            .map(|i| (0..50u8).map(|j| j.wrapping_mul(7) ^ i).collect())
            .collect();
        let inputs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let shares = fec.encode(&inputs);
        assert_eq!(&shares[..3], &data[..]);
        for a in 0..10 {
            for b in a + 1..10 {
                for c in b + 1..10 {
                    let pick = [
                        (a, &shares[a][..]),
                        (b, &shares[b][..]),
                        (c, &shares[c][..]),
                    ];
                    assert_eq!(fec.decode(&pick).unwrap(), data, "{a} {b} {c}");
                }
            }
        }
    }

    #[test]
    fn bad_decode_input_is_an_error() {
        let fec = Fec::new(2, 3).unwrap();
        assert!(fec.decode(&[(0, b"a")]).is_err());
        assert!(fec.decode(&[(0, b"a"), (0, b"b")]).is_err());
        assert!(fec.decode(&[(0, b"a"), (5, b"b")]).is_err());
        assert!(fec.decode(&[(0, b"a"), (1, b"bb")]).is_err());
        assert!(Fec::new(0, 3).is_err());
        assert!(Fec::new(4, 3).is_err());
        assert!(Fec::new(1, 257).is_err());
    }
}
