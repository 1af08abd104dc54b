"""Release exports: a verified release written in the layout a trainer's own tools read (imagefolder, hf, ...)."""
