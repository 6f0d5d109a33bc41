use super::*;
#[test]
fn speed_probe() {
    for (k, n) in [(3u16, 10u16), (101, 256)] {
        let data = vec![5u8; 4 << 20];
        let p = Params::with_segment_size(k, n, 131072).unwrap();
        let t = std::time::Instant::now();
        let _ = encode::encode_bytes(&data, &p, b"x").unwrap();
        eprintln!("{k}-of-{n}: 4 MiB in {:?}", t.elapsed());
    }
}
