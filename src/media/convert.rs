//! HEIC → JPEG, for `offload export --convert-heic jpeg` (cargo feature `heic`, built on
//! libheif). Without the feature [`AVAILABLE`] is false and the command refuses the flag
//! before anything is copied.
//!
//! The JPEG keeps what makes it the same photo: the pixels as they are meant to be
//! seen (libheif applies the HEIF rotation and mirroring while decoding), the EXIF block
//! (so DateTimeOriginal and the rest travel), with its Orientation set to 1 because the
//! pixels are already upright, and the colour profile.

/// True in builds that can convert.
pub const AVAILABLE: bool = cfg!(feature = "heic");

/// JPEG quality: visually lossless for photos, about the size of the HEIC × 2.
#[cfg(feature = "heic")]
const QUALITY: u8 = 92;

/// Largest APP1/APP2 segment payload a JPEG can hold.
#[cfg(feature = "heic")]
const MAX_SEGMENT: usize = 65_533;

/// Decodes the HEIC at `path` and encodes it as a JPEG. The error says why not (a
/// damaged file, an image too large for JPEG, a build without the feature).
pub fn heic_to_jpeg(path: &std::path::Path) -> Result<Vec<u8>, String> {
    #[cfg(feature = "heic")]
    {
        convert(path)
    }
    #[cfg(not(feature = "heic"))]
    {
        let _ = path;
        Err("this build has no HEIC support (cargo feature `heic`)".into())
    }
}

#[cfg(feature = "heic")]
fn convert(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use libheif_rs::{ColorSpace, HeifContext, ItemId, LibHeif, RgbChroma};

    let lib = LibHeif::new();
    let path_str = path.to_str().ok_or("the temp file's path is not UTF-8")?;
    let ctx = HeifContext::read_from_file(path_str).map_err(|e| e.to_string())?;
    let handle = ctx.primary_image_handle().map_err(|e| e.to_string())?;
    let image = lib
        .decode(&handle, ColorSpace::Rgb(RgbChroma::Rgb), None)
        .map_err(|e| e.to_string())?;
    let (w, h) = (image.width(), image.height());
    let (Ok(w16), Ok(h16)) = (u16::try_from(w), u16::try_from(h)) else {
        return Err(format!("{w}×{h} is larger than a JPEG can be"));
    };
    let plane = image
        .planes()
        .interleaved
        .ok_or("libheif gave no interleaved RGB plane")?;
    let row = w as usize * 3;
    let mut pixels = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        let start = y * plane.stride;
        pixels.extend_from_slice(
            plane
                .data
                .get(start..start + row)
                .ok_or("libheif's plane is shorter than the image")?,
        );
    }

    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, QUALITY);
    let mut ids: Vec<ItemId> = vec![0; 4];
    let n = handle.metadata_block_ids(&mut ids, b"Exif");
    if let Some(id) = ids.iter().take(n).next() {
        let block = handle.metadata(*id).map_err(|e| e.to_string())?;
        if let Some(tiff) = exif_tiff(&block) {
            let mut app1 = b"Exif\0\0".to_vec();
            app1.extend_from_slice(tiff);
            set_orientation_upright(&mut app1[6..]);
            if app1.len() <= MAX_SEGMENT {
                encoder
                    .add_app_segment(1, &app1)
                    .map_err(|e| e.to_string())?;
            } else {
                return Err("its EXIF block is too large for a JPEG".into());
            }
        }
    }
    if let Some(icc) = handle.color_profile_raw() {
        encoder
            .add_icc_profile(&icc.data)
            .map_err(|e| e.to_string())?;
    }
    encoder
        .encode(&pixels, w16, h16, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// The TIFF part of a HEIF `Exif` item: a 4-byte big-endian offset to the TIFF header,
/// then (after that many bytes) `II*\0` or `MM\0*`.
#[cfg_attr(not(feature = "heic"), allow(dead_code))]
fn exif_tiff(block: &[u8]) -> Option<&[u8]> {
    let skip = u32::from_be_bytes(block.get(..4)?.try_into().ok()?) as usize;
    let tiff = block.get(4usize.checked_add(skip)?..)?;
    let tiff = match tiff {
        // Some writers keep the JPEG APP1 prefix.
        [b'E', b'x', b'i', b'f', 0, 0, rest @ ..] => rest,
        t => t,
    };
    (tiff.starts_with(b"II*\0") || tiff.starts_with(b"MM\0*")).then_some(tiff)
}

/// Sets IFD0's Orientation (0x0112) to 1 (upright) in a TIFF block, if it is there.
#[cfg_attr(not(feature = "heic"), allow(dead_code))]
fn set_orientation_upright(tiff: &mut [u8]) {
    let le = tiff.starts_with(b"II");
    let u16_at = |t: &[u8], i: usize| -> Option<u16> {
        let b: [u8; 2] = t.get(i..i + 2)?.try_into().ok()?;
        Some(if le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let Some(ifd0) = tiff.get(4..8).map(|b| {
        let b: [u8; 4] = b.try_into().expect("4 bytes");
        (if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }) as usize
    }) else {
        return;
    };
    let Some(count) = u16_at(tiff, ifd0) else {
        return;
    };
    for i in 0..count as usize {
        let at = ifd0 + 2 + 12 * i;
        if u16_at(tiff, at) == Some(0x0112) && u16_at(tiff, at + 2) == Some(3) {
            let one = if le { [1, 0] } else { [0, 1] };
            if let Some(v) = tiff.get_mut(at + 8..at + 10) {
                v.copy_from_slice(&one);
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orientation_is_reset_in_both_byte_orders() {
        // IFD0 at 8 with one entry: Orientation SHORT 1 value 6.
        let mut le = b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0\0\0\0\0".to_vec();
        set_orientation_upright(&mut le);
        assert_eq!(&le[18..20], &[1, 0]);
        let mut be = b"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0".to_vec();
        set_orientation_upright(&mut be);
        assert_eq!(&be[18..20], &[0, 1]);
        // Truncated blocks are left alone, without a panic.
        let mut short = b"II*\0\xFF\0\0\0".to_vec();
        set_orientation_upright(&mut short);
    }

    #[test]
    fn exif_items_are_unwrapped() {
        let mut block = vec![0, 0, 0, 6];
        block.extend_from_slice(b"Exif\0\0II*\0\x08\0\0\0");
        assert_eq!(exif_tiff(&block), Some(&b"II*\0\x08\0\0\0"[..]));
        assert_eq!(
            exif_tiff(&[0, 0, 0, 0, b'M', b'M', 0, b'*']),
            Some(&b"MM\0*"[..])
        );
        assert_eq!(exif_tiff(&[0, 0, 0, 9, 1]), None);
        assert_eq!(exif_tiff(b"junk"), None);
    }
}
