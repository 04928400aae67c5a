"""What a person configures: connections to Constant Contact accounts, exports (segments to a
list, the field mapping, consent, schedule), lists and custom fields. The run pipeline in
``segment_export.exports`` reads these; nothing here imports the pipeline."""
