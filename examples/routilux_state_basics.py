from runtime import Flow, Routine

class SimpleProcessor(Routine):
    def __init__(self):
        super().__init__()
        self.input_slot = self.define_slot("input", handler=self.process)
        self.output_event = self.define_event("output", ["result"])

    def process(self, data=None, **kwargs):
        data_value = data or kwargs.get("data", "")
        result = f"Processed: {data_value}"

        # Store execution state in JobState using get_execution_context()
        ctx = self.get_execution_context()
        if ctx:
            ctx.job_state.update_routine_state(
                ctx.routine_id, {"last_processed": data_value, "processed": True}
            )

        self.emit("output", result=result)

class DataSource(Routine):
    def __init__(self):
        super().__init__()
        self.trigger_slot = self.define_slot("trigger", handler=self.send)
        self.output_event = self.define_event("output", ["data"])

    def send(self, **kwargs):
        self.emit("output", data="test")

flow = Flow(flow_id="jobstate_flow")

source = DataSource()
processor = SimpleProcessor()

source_id = flow.add_routine(source, "source")
processor_id = flow.add_routine(processor, "processor")

flow.connect(source_id, "output", processor_id, "input")

job_state = flow.execute(source_id)

# Access JobState information
print(f"Status: {job_state.status}")
print(f"Flow ID: {job_state.flow_id}")
print(f"Created at: {job_state.created_at}")

# Get execution history
history = job_state.get_execution_history()
print(f"Execution records: {len(history)}")

# Check routine states
processor_state = job_state.get_routine_state(processor_id)
print(f"Processor state: {processor_state}")
