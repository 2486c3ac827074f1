"""A photo's caption, in one place: where it comes from (sidecar files and fields inside the image,
:mod:`.sources`) and how a user edits it (:mod:`.edit`, which re-embeds only the caption vector)."""
