create type order_status as enum ('open', 'paid', 'shipped');
alter table orders alter column status type order_status using status::order_status;
