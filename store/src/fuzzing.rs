//! Entry points for the fuzz targets in `fuzz/` (one call each). Not part of
//! the API: they panic on purpose when an invariant breaks.

use crate::narinfo::NarInfo;
use crate::store_path::StoreDir;

/// Parse `data` as a narinfo; if it parses, rendering it and parsing again
/// must give the same value.
pub fn narinfo(data: &[u8]) {
    let store_dir = StoreDir::default();
    if let Ok(info) = NarInfo::parse_bytes(data, &store_dir) {
        let text = info.render(&store_dir);
        match NarInfo::parse(&text, &store_dir) {
            Ok(again) => assert_eq!(again, info, "narinfo changed by render:\n{text}"),
            Err(e) => panic!("rendered narinfo does not parse: {e}\n{text}"),
        }
    }
}
