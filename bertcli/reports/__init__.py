"""What a run or an evaluation reports: metrics, plots and the model card."""
