"""The run engine: `synth run` and `synth resume` (entry), the checks made before
anything is recorded or spent (preflight), and the async loop over trials and
attempts (loop)."""
