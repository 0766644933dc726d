// What drawing a lesion's picture needs: where its key slice is (DeepLesion File_name, or the
// path recorded at load time), its display window, RECIST axes and box in pixels, and its body
// location for the body map; no row when the lesion is unknown.
MATCH (l:Lesion {lesion_id: $lesion_id})
RETURN l {.file_name, .image_path, .window, .recist, .bbox, .long_axis_px, .short_axis_px,
          .location, .location_xy, .image_size} AS lesion
