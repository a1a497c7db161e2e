"""What people look at: run summaries, pictures of explanations (outlines, heatmaps) and the HTML report."""
