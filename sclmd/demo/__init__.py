"""The demo page (`sclmd demo`): record or drop a voice in a browser, see the faces drawn for it."""
