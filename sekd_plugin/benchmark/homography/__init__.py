"""HPatches-style homography benchmark: ``run`` (the driver), ``protocols`` (image
preparation of each paper's protocol), ``metrics`` (MMA, homography accuracy,
repeatability, matching score) and ``report`` (results.json / results.md / plots)."""
