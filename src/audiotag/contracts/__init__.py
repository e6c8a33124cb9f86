"""What crosses a stage boundary, torch-free: names and path templates of outputs, the
label and predictions tables, checkpoint metadata, and the model catalogue with every
model's params.

Every reader and writer imports the format from here, so a light stage (check_params,
explore, ensemble, report) or ``audiotag compare`` reads what a heavy one wrote without
loading torch. Only :mod:`audiotag.core` lies below.
"""
