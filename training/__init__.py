"""Training of the shapes demo model: the procedural dataset, the resumable training scripts, the assembly of the
shipped folders and the evaluation of what the model draws. Never imported by the app."""
